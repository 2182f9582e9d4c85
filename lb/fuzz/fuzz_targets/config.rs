#![no_main]
//! `lb::fuzzing::config`: see its doc for the input and the properties.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lb::fuzzing::config(data);
});
