//! A real DNS server on loopback UDP (hickory-proto messages) whose answers tests change.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// These A records (TTL 600, as Docker does), for any name.
    Records(Vec<Ipv4Addr>),
    /// SRV records `(priority, weight, port)` for any name, each with the target
    /// `backend.test.`, which resolves (A) to 127.0.0.1.
    Srv(Vec<(u16, u16, u16)>),
    /// As `Srv`, plus one more record of the first one's priority whose target,
    /// `gone.test.`, does not exist (NXDOMAIN): a stale entry in a service registry.
    SrvWithStaleTarget(Vec<(u16, u16, u16)>),
    NxDomain,
    ServFail,
}

pub(crate) struct DnsServer {
    pub(crate) addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    pub(crate) async fn start(initial: Answer) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("dns bind");
        let addr = socket.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new(initial));
        let shared = answer.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let current = shared.lock().expect("lock").clone();
                if let Some(reply) = respond(&query, &current) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        DnsServer { addr, answer, task }
    }

    pub(crate) fn set(&self, answer: Answer) {
        *self.answer.lock().expect("lock") = answer;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(query: &Message, answer: &Answer) -> Option<Vec<u8>> {
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    for q in query.queries() {
        reply.add_query(q.clone());
    }
    match answer {
        Answer::NxDomain => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Answer::ServFail => {
            reply.set_response_code(ResponseCode::ServFail);
        }
        Answer::Srv(records) | Answer::SrvWithStaleTarget(records) => {
            reply.set_response_code(ResponseCode::NoError);
            let target = Name::from_ascii("backend.test.").expect("name");
            let gone = Name::from_ascii("gone.test.").expect("name");
            let stale = matches!(answer, Answer::SrvWithStaleTarget(_));
            for q in query.queries() {
                if stale && q.name() == &gone {
                    reply.set_response_code(ResponseCode::NXDomain);
                    continue;
                }
                match q.query_type() {
                    RecordType::SRV => {
                        for &(priority, weight, port) in records {
                            reply.add_answer(Record::from_rdata(
                                q.name().clone(),
                                600,
                                RData::SRV(SRV::new(priority, weight, port, target.clone())),
                            ));
                        }
                        if let (true, Some(&(priority, _, _))) = (stale, records.first()) {
                            reply.add_answer(Record::from_rdata(
                                q.name().clone(),
                                600,
                                RData::SRV(SRV::new(priority, 1, 1, gone.clone())),
                            ));
                        }
                    }
                    RecordType::A => {
                        reply.add_answer(Record::from_rdata(
                            q.name().clone(),
                            600,
                            RData::A(A(Ipv4Addr::LOCALHOST)),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Answer::Records(ips) => {
            reply.set_response_code(ResponseCode::NoError);
            for q in query.queries() {
                if q.query_type() == RecordType::A {
                    for ip in ips {
                        reply.add_answer(Record::from_rdata(
                            q.name().clone(),
                            600,
                            RData::A(A(*ip)),
                        ));
                    }
                }
            }
        }
    }
    reply.to_vec().ok()
}
