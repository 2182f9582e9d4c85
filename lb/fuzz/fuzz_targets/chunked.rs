#![no_main]
//! `lb::fuzzing::chunked`: see its doc for the input and the properties.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    lb::fuzzing::chunked(data);
});
