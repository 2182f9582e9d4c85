//! The property that makes the lb's answers the only ones a client sees: every head that
//! [`head::check`] accepts, pingora's own HTTP/1 parser accepts too (else pingora would
//! answer its bare 400). Checked over seeds and many mutations of them, with pingora's real
//! session reading the accepted bytes as the lb hands them over (a pipelined prefix).

use bytes::BytesMut;
use pingora::protocols::http::ServerSession;

use super::head::{self, HeadLimits};

const LIMITS: HeadLimits = HeadLimits {
    head_size: 8 << 10,
    headers: 100,
    uri_length: 2 << 10,
};

const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a/b?c=d&e=%20 HTTP/1.1\r\nHost: a.test:8080\r\nAccept: */*\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"GET http://a.test HTTP/1.0\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"\r\nGET / HTTP/1.1\r\nHost: [::1]:80\r\nX-A: \t b \t\r\n\r\n",
];

/// Bytes that make parsers disagree: delimiters, whitespace, controls, non-ASCII.
const INTERESTING: &[u8] = b" \t\r\n:;,@#?/%\"<>{}\\|^`[]\x00\x01\x7f\x80\xff-_.~=+*&!$'()0Az";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Does pingora read `buf` as a request head, given as the lb gives it?
fn pingora_accepts(runtime: &tokio::runtime::Runtime, buf: &[u8]) -> bool {
    runtime.block_on(async {
        let (server, _client) = tokio::io::duplex(1 << 16);
        let mut session = ServerSession::new_http1(Box::new(server));
        session.set_pipelined_prefix(BytesMut::from(buf));
        matches!(session.read_request().await, Ok(true))
    })
}

/// xorshift64: reproducible mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(v.len() + 1);
        let byte = INTERESTING[rng.below(INTERESTING.len())];
        match rng.below(4) {
            0 => v.insert(at, byte),
            1 if at < v.len() => v[at] = byte,
            2 if at < v.len() => {
                v.remove(at);
            }
            _ => {
                // Splice a piece of another seed in: header lines from one into another.
                let other = SEEDS[rng.below(SEEDS.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(24)).min(other.len());
                v.splice(at..at, other[from..to].iter().copied());
            }
        }
    }
    v
}

#[test]
fn every_seed_is_accepted_by_both() {
    let runtime = runtime();
    for seed in SEEDS {
        assert!(
            matches!(head::check(seed, &LIMITS), Ok(Some(_))),
            "the lb refused {:?}",
            seed.escape_ascii().to_string()
        );
        assert!(
            pingora_accepts(&runtime, seed),
            "pingora refused {:?}",
            seed.escape_ascii().to_string()
        );
    }
}

#[test]
fn what_the_lb_accepts_pingora_accepts() {
    // `LB_AGREE_CASES` and `LB_AGREE_SEED` run a longer or different search by hand.
    let cases = std::env::var("LB_AGREE_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    let seed = std::env::var("LB_AGREE_SEED")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut rng = Rng(seed.unwrap_or(0x5eed_50f7_b1c0_0001));
    let runtime = runtime();
    let mut accepted = 0;
    for i in 0..cases.unwrap_or(20_000) {
        let input = mutate(&mut rng, SEEDS[i % SEEDS.len()]);
        if let Ok(Some(_)) = head::check(&input, &LIMITS) {
            accepted += 1;
            assert!(
                pingora_accepts(&runtime, &input),
                "the lb accepts a head pingora refuses: {:?}",
                input.escape_ascii().to_string()
            );
        }
    }
    // The mutations must leave enough heads intact for the property to mean something.
    assert!(
        accepted > cases.unwrap_or(20_000) / 10,
        "only {accepted} mutated heads were accepted"
    );
}
