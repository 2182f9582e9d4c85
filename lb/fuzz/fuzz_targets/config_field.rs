#![no_main]
//! `lb::fuzzing::config_field`: see its doc for the input and the properties.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lb::fuzzing::config_field(data);
});
