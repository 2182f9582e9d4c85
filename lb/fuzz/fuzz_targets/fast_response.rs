#![no_main]
//! `lb::fuzzing::fast_response`: see its doc for the input and the properties.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    lb::fuzzing::fast_response(data);
});
