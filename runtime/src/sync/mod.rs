//! Goroutine-aware sync primitives — see issue 3.
