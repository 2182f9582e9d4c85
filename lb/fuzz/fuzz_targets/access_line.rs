#![no_main]
//! `lb::fuzzing::access_line`: the fields of one request, built by `arbitrary`.

libfuzzer_sys::fuzz_target!(|input: lb::fuzzing::AccessLine| {
    lb::fuzzing::access_line(input);
});
