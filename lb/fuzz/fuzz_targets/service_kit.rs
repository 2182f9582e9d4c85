#![no_main]
//! service-kit's parsers (`service_kit::fuzzing`). The first byte picks one (mod 3):
//! 0, the healthcheck client reading an answer; 1, its URL; 2, the request-id rule on the
//! `X-Request-Id` values in the rest, one per line.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => service_kit::fuzzing::healthcheck_answer(rest),
        1 => service_kit::fuzzing::healthcheck_url(&String::from_utf8_lossy(rest)),
        _ => {
            let values: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
            service_kit::fuzzing::request_id(&values);
        }
    }
});
