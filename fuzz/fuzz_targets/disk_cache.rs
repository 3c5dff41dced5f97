#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| container_image_pusher_fuzz::disk_cache(data));
