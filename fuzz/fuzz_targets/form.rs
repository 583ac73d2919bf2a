//! The form body reader: any bytes give an object nested at most `MAX_DEPTH` deep, or the one
//! depth refusal (a key nesting deeper once aborted the process with a stack overflow).
#![no_main]

use batchd::http::body::{self, BodyKind, MAX_DEPTH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match body::form_to_value(data) {
        Ok(v) => {
            assert!(v.is_object());
            let e = body::extent(&v, usize::MAX).expect("no budget");
            assert!(e.depth <= MAX_DEPTH, "depth {}", e.depth);
            // The body reader answers the same (an all-blank body is no body at all).
            if !data.iter().all(u8::is_ascii_whitespace) {
                assert_eq!(body::parse(BodyKind::Form, data).unwrap(), Some(v));
            }
        }
        Err(e) => assert_eq!(e.msg, body::too_deep().msg),
    }
});
