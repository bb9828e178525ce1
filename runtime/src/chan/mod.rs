//! Channels (gort::chan) — see issue 3.
