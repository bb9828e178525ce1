//! The `select!` macro: parses the arms and calls `select::select` with one case per arm.

/// Waits on several channel operations and runs the arm of the one that completes (Go's
/// `select`).
///
/// Arms, separated by commas (optional after a block):
///
/// * `v = rx.recv() => body` — receive; `v: Option<T>` is `None` when the channel is closed
///   (`v, ok := <-ch`). `rx.recv() => body` discards the value. Any irrefutable pattern may
///   stand for `v`.
/// * `tx.send(x) => body` — send; `r = tx.send(x) => body` binds `Result<(), SendError<T>>`:
///   on a closed channel the arm is ready and the value comes back (Go panics).
/// * `default => body` — taken when no other arm is ready (non-blocking select).
///
/// `rx` and `tx` may be any expressions (`chans[i].1`, `gort::time::after(d)`, `cc.recv().unwrap()`);
/// temporaries they create live until the select is over. Channel and value expressions are
/// evaluated once, in source order, before anything else (Go evaluates all of them too, even for
/// the arms that are not chosen). When several arms are ready one is chosen uniformly at random.
/// The same channel may appear in several arms. `select! {}` parks the goroutine forever
/// (`select (no cases)`); a select whose channels are all [`nil`](crate::chan::nil) parks forever
/// with `select`. Bodies are plain blocks of the enclosing function: `break`, `continue`,
/// `return` and `?` work.
///
/// At most 64 arms. The macro is a token muncher that needs about three levels of macro recursion
/// per arm; beyond 40 arms or so, raise the crate's `#![recursion_limit]`.
///
/// ```ignore
/// loop {
///     gort::select! {
///         v = data.recv() => match v { Some(v) => sum += v, None => break },
///         _ = gort::time::after(Duration::from_millis(10)).recv() => println!("tick"),
///     }
/// }
/// ```
#[macro_export]
macro_rules! select {
    () => { $crate::chan::select::block_forever() };
    // ---- @head cases defaults ids [acc] tokens: an arm's head up to `=` or `.recv() =>` /
    // `.send(v) =>`. Looks up to three tokens ahead and munches three at a time, so an arm costs
    // few recursion levels. Rules are ordered by the position they test, earliest first. ----
    (@head $cs:tt $def:tt $ids:tt []) => {
        $crate::select!(@emit $cs $def)
    };
    (@head $cs:tt [] $ids:tt [] default => $($rest:tt)*) => {
        $crate::select!(@body $cs [] $ids (default) $($rest)*)
    };
    (@head $cs:tt [$($d:tt)+] $ids:tt [] default => $($rest:tt)*) => {
        ::core::compile_error!("select!: more than one `default` arm")
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] = $($rest:tt)*) => {
        $crate::select!(@op $cs $def $ids ($($acc)*) [] $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)+] . recv () => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (recv (_) ($($acc)+)) $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)+] . send ($($v:tt)*) => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (send (_) ($($acc)+) ($($v)*)) $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt = $($rest:tt)*) => {
        $crate::select!(@op $cs $def $ids ($($acc)* $a) [] $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt . recv () => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (recv (_) ($($acc)* $a)) $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt . send ($($v:tt)*) => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (send (_) ($($acc)* $a) ($($v)*)) $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt $b:tt = $($rest:tt)*) => {
        $crate::select!(@op $cs $def $ids ($($acc)* $a $b) [] $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt $b:tt . recv () => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (recv (_) ($($acc)* $a $b)) $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt $b:tt . send ($($v:tt)*) => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (send (_) ($($acc)* $a $b) ($($v)*)) $($rest)*)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] => $($rest:tt)*) => {
        $crate::select!(@bad_arm)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt => $($rest:tt)*) => {
        $crate::select!(@bad_arm)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt $b:tt => $($rest:tt)*) => {
        $crate::select!(@bad_arm)
    };
    (@head $cs:tt $def:tt $ids:tt [$($acc:tt)*] $a:tt $b:tt $c:tt $($rest:tt)+) => {
        $crate::select!(@head $cs $def $ids [$($acc)* $a $b $c] $($rest)+)
    };
    (@head $($t:tt)*) => {
        $crate::select!(@bad_arm)
    };

    // ---- @op cases defaults ids (pat) [acc] tokens: the channel expression after `pat =` ----
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)+] . recv () => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (recv $pat ($($acc)+)) $($rest)*)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)+] . send ($($v:tt)*) => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (send $pat ($($acc)+) ($($v)*)) $($rest)*)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)*] $a:tt . recv () => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (recv $pat ($($acc)* $a)) $($rest)*)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)*] $a:tt . send ($($v:tt)*) => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (send $pat ($($acc)* $a) ($($v)*)) $($rest)*)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)*] $a:tt $b:tt . recv () => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (recv $pat ($($acc)* $a $b)) $($rest)*)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)*] $a:tt $b:tt . send ($($v:tt)*) => $($rest:tt)*) => {
        $crate::select!(@body $cs $def $ids (send $pat ($($acc)* $a $b) ($($v)*)) $($rest)*)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)*] => $($rest:tt)*) => {
        $crate::select!(@bad_arm)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)*] $a:tt => $($rest:tt)*) => {
        $crate::select!(@bad_arm)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)*] $a:tt $b:tt => $($rest:tt)*) => {
        $crate::select!(@bad_arm)
    };
    (@op $cs:tt $def:tt $ids:tt $pat:tt [$($acc:tt)*] $a:tt $b:tt $c:tt $($rest:tt)+) => {
        $crate::select!(@op $cs $def $ids $pat [$($acc)* $a $b $c] $($rest)+)
    };
    (@op $($t:tt)*) => {
        $crate::select!(@bad_arm)
    };
    (@bad_arm) => {
        ::core::compile_error!("select!: an arm must be `pat = rx.recv() => ..`, `rx.recv() => ..`, `[pat =] tx.send(v) => ..` or `default => ..`")
    };

    // ---- @body cases defaults ids case tokens: the arm's body; gives the arm an identifier ----
    (@body $cs:tt [] $ids:tt (default) $b:block , $($rest:tt)*) => {
        $crate::select!(@head $cs [$b] $ids [] $($rest)*)
    };
    (@body $cs:tt [] $ids:tt (default) $b:block $($rest:tt)*) => {
        $crate::select!(@head $cs [$b] $ids [] $($rest)*)
    };
    (@body $cs:tt [] $ids:tt (default) $b:expr , $($rest:tt)*) => {
        $crate::select!(@head $cs [{ $b }] $ids [] $($rest)*)
    };
    (@body $cs:tt [] $ids:tt (default) $b:expr) => {
        $crate::select!(@head $cs [{ $b }] $ids [])
    };
    (@body $cs:tt $def:tt [] $($rest:tt)*) => {
        ::core::compile_error!("select!: more than 64 arms")
    };
    (@body [$($cs:tt)*] $def:tt [$id:ident $($ids:ident)*] $case:tt $b:block , $($rest:tt)*) => {
        $crate::select!(@head [$($cs)* ($id $case $b)] $def [$($ids)*] [] $($rest)*)
    };
    (@body [$($cs:tt)*] $def:tt [$id:ident $($ids:ident)*] $case:tt $b:block $($rest:tt)*) => {
        $crate::select!(@head [$($cs)* ($id $case $b)] $def [$($ids)*] [] $($rest)*)
    };
    (@body [$($cs:tt)*] $def:tt [$id:ident $($ids:ident)*] $case:tt $b:expr , $($rest:tt)*) => {
        $crate::select!(@head [$($cs)* ($id $case { $b })] $def [$($ids)*] [] $($rest)*)
    };
    (@body [$($cs:tt)*] $def:tt [$id:ident $($ids:ident)*] $case:tt $b:expr) => {
        $crate::select!(@head [$($cs)* ($id $case { $b })] $def [$($ids)*] [])
    };

    // ---- @emit: one case object per arm on this stack frame, the select, then the arm that
    // completed (an `if` chain, so `break`/`continue` in bodies reach the caller's loops) ----
    (@emit [$(($c:ident ($kind:ident ($($pat:tt)*) ($($ch:tt)+) $(($($v:tt)*))?) $b:tt))*] [$($def:tt)*]) => {{
        $(
            // A `let` of a reference keeps a temporary channel (`after(d).recv()`) alive to the
            // end of the block.
            let __chan = &($($ch)+);
            let mut $c = $crate::select!(@new $kind __chan $(($($v)*))?);
        )*
        let __index = $crate::chan::select::select(
            &mut [$(&mut $c as &mut dyn $crate::chan::select::Case),*],
            $crate::select!(@has_default $($def)*),
        );
        let mut __k = 0usize;
        $(
            if { __k += 1; __index == __k - 1 } {
                #[allow(unused_variables)]
                let $($pat)* = $c.take();
                $b
            } else
        )*
        { $crate::select!(@default $($def)*) }
    }};
    (@new recv $ch:ident) => { $crate::chan::select::RecvCase::new($ch) };
    (@new send $ch:ident ($($v:tt)*)) => { $crate::chan::select::SendCase::new($ch, $($v)*) };
    (@has_default) => { false };
    (@has_default $($t:tt)+) => { true };
    (@default) => { ::core::unreachable!("select!: no arm completed") };
    (@default $b:tt) => { $b };

    // ---- entry (last, so that the internal `@` rules above match first) ----
    ($($t:tt)+) => {
        $crate::select!(@head [] [] [__c0 __c1 __c2 __c3 __c4 __c5 __c6 __c7 __c8 __c9 __c10 __c11 __c12 __c13 __c14 __c15 __c16 __c17 __c18 __c19 __c20 __c21 __c22 __c23 __c24 __c25 __c26 __c27 __c28 __c29 __c30 __c31 __c32 __c33 __c34 __c35 __c36 __c37 __c38 __c39 __c40 __c41 __c42 __c43 __c44 __c45 __c46 __c47 __c48 __c49 __c50 __c51 __c52 __c53 __c54 __c55 __c56 __c57 __c58 __c59 __c60 __c61 __c62 __c63] [] $($t)+)
    };
}
