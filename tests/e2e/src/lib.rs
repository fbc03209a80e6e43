//! safeship's end-to-end tests live in `tests/`; this crate has no code of its own. What they run
//! against (emulators, the local Runtime API, the worlds) is `safeship-testkit`.
