//! <https://github.com/golang/go/blob/master/test/chan/powser1.go>: Doug McIlroy's power series
//! ("Squinting at Power Series"), rewritten against gort's channels and `select!`.
//!
//! A power series is a *demand channel*: a consumer sends a request on `req` and the series'
//! generator goroutine answers with the next rational coefficient on `dat`; a coefficient with
//! denominator 0 marks the end. Every operator (sum, product, derivative, integral, exponential,
//! substitution) is a goroutine reading its operands' demand channels, so a product or an
//! exponential is a growing network of goroutines: `Mul` splits its operands and recurses, and
//! `Exp` feeds its own output back into itself through `split`, which keeps generations of
//! goroutines that each hold one value until both readers took it. It exercises select with send
//! and receive arms on channels switched to nil, unbuffered handoff, and about a hundred goroutines
//! left parked when the test ends (as the Go program leaves them).
//!
//! Ported for meaning, not line by line; only the operators the checks use. Source:
//! <https://github.com/golang/go/tree/master/test/chan>, Copyright 2009 The Go Authors,
//! BSD-style license.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};

use common::{go, run, PATIENCE};
use gort::chan::{self, Receiver, Sender};

/// A rational number; `den == 0` is the end mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rat {
    num: i64,
    den: i64,
}

const FINIS: Rat = Rat { num: 1, den: 0 };

fn gcd(u: i64, v: i64) -> i64 {
    if u < 0 {
        gcd(-u, v)
    } else if u == 0 {
        v
    } else {
        gcd(v % u, u)
    }
}

/// `u/v` in lowest terms with a positive denominator.
fn rat(u: i64, v: i64) -> Rat {
    let g = gcd(u, v);
    if v > 0 {
        Rat { num: u / g, den: v / g }
    } else {
        Rat { num: -u / g, den: -v / g }
    }
}

fn int(u: i64) -> Rat {
    rat(u, 1)
}

impl Rat {
    fn is_end(self) -> bool {
        self.den == 0
    }

    fn add(self, v: Rat) -> Rat {
        let g = gcd(self.den, v.den);
        rat(self.num * (v.den / g) + v.num * (self.den / g), self.den * (v.den / g))
    }

    fn mul(self, v: Rat) -> Rat {
        let g1 = gcd(self.num, v.den);
        let g2 = gcd(self.den, v.num);
        Rat { num: (self.num / g1) * (v.num / g2), den: (self.den / g2) * (v.den / g1) }
    }

    fn neg(self) -> Rat {
        rat(-self.num, self.den)
    }
}

/// A demand channel: both ends of the request and the data channel (Go's channels are
/// bidirectional values; the ends here are cheap clones of one channel each).
#[derive(Clone)]
struct Ps {
    req_tx: Sender<i64>,
    req_rx: Receiver<i64>,
    dat_tx: Sender<Rat>,
    dat_rx: Receiver<Rat>,
}

fn mkps() -> Ps {
    let (req_tx, req_rx) = chan::chan(0);
    let (dat_tx, dat_rx) = chan::chan(0);
    Ps { req_tx, req_rx, dat_tx, dat_rx }
}

static SEQNO: AtomicI64 = AtomicI64::new(0);

fn next_seq() -> i64 {
    SEQNO.fetch_add(1, Ordering::Relaxed) + 1
}

impl Ps {
    /// Waits for the next request on this series.
    fn demanded(&self) {
        self.req_rx.recv().expect("request channel closed");
    }

    /// Answers a request.
    fn answer(&self, r: Rat) {
        self.dat_tx.send(r).expect("data channel closed");
    }

    /// Waits for a request, then answers it (Go's `put`).
    fn put(&self, r: Rat) {
        self.demanded();
        self.answer(r);
    }

    /// Requests and reads the next coefficient (Go's `get`).
    fn get(&self) -> Rat {
        self.req_tx.send(next_seq()).expect("request channel closed");
        match self.dat_rx.recv_timeout(PATIENCE) {
            Ok(r) => r,
            Err(e) => panic!("no coefficient within {PATIENCE:?}: {e:?}"),
        }
    }
}

/// One coefficient from each of two series, requested and read in whatever order they become
/// ready (Go's `getn`): a select over two send arms and two receive arms, each switched to a
/// nil channel once done.
fn get2(in0: &Ps, in1: &Ps) -> [Rat; 2] {
    let mut req = [in0.req_tx.clone(), in1.req_tx.clone()];
    let mut dat = [chan::nil::<Rat>().1, chan::nil::<Rat>().1];
    let mut out = [FINIS; 2];
    for _ in 0..4 {
        let seq = next_seq();
        gort::select! {
            req[0].send(seq) => {
                dat[0] = in0.dat_rx.clone();
                req[0] = chan::nil().0;
            },
            req[1].send(seq) => {
                dat[1] = in1.dat_rx.clone();
                req[1] = chan::nil().0;
            },
            v = dat[0].recv() => {
                out[0] = v.expect("data channel closed");
                dat[0] = chan::nil().1;
            },
            v = dat[1].recv() => {
                out[1] = v.expect("data channel closed");
                dat[1] = chan::nil().1;
            },
        }
    }
    out
}

/// Serves every request on `out` with the next coefficient of `inp`, forever.
fn copy(inp: &Ps, out: &Ps) -> ! {
    loop {
        out.demanded();
        out.answer(inp.get());
    }
}

/// One generation of a split: serves one value of `inp` to both outputs, which may read at
/// different rates. The newest generation serves `out[0]`; when an older one has delivered to
/// `out[1]` it signals `wait`, and the next newer generation starts serving both.
fn dosplit(inp: Ps, mut out: [Ps; 2], wait: Receiver<i32>) {
    let mut both = false;
    gort::select! {
        _ = out[0].req_rx.recv() => {},
        _ = wait.recv() => {
            both = true;
            let mut swap = false;
            gort::select! {
                _ = out[0].req_rx.recv() => {},
                _ = out[1].req_rx.recv() => swap = true,
            }
            if swap {
                out.swap(0, 1);
            }
        },
    }
    inp.req_tx.send(next_seq()).expect("request channel closed");
    let (release, next_wait) = chan::chan(0);
    {
        let (inp, out) = (inp.clone(), out.clone());
        go!(move || dosplit(inp, out, next_wait));
    }
    let dat = inp.dat_rx.recv().expect("data channel closed");
    out[0].answer(dat);
    if !both {
        wait.recv();
    }
    out[1].demanded();
    out[1].answer(dat);
    release.send(0).expect("release channel closed");
}

/// Replicates `inp` onto the two series of `out` (returns once the first generation runs).
fn split(inp: Ps, out: [Ps; 2]) {
    let (release, wait) = chan::chan(0);
    go!(move || dosplit(inp, out, wait));
    release.send(0).expect("release channel closed");
}

/// Two series identical to `u`.
fn split_ps(u: Ps) -> [Ps; 2] {
    let uu = [mkps(), mkps()];
    let out = uu.clone();
    go!(move || split(u, out));
    uu
}

/// `c, c, c, ...`
fn rep(c: Rat) -> Ps {
    let z = mkps();
    let zz = z.clone();
    go!(move || -> () {
        loop {
            zz.put(c);
        }
    });
    z
}

/// `U + V`
fn add(u: Ps, v: Ps) -> Ps {
    let z = mkps();
    let zz = z.clone();
    go!(move || -> () {
        loop {
            zz.demanded();
            let uv = get2(&u, &v);
            match (uv[0].is_end(), uv[1].is_end()) {
                (false, false) => zz.answer(uv[0].add(uv[1])),
                (true, false) => {
                    zz.answer(uv[1]);
                    copy(&v, &zz);
                }
                (false, true) => {
                    zz.answer(uv[0]);
                    copy(&u, &zz);
                }
                (true, true) => zz.answer(FINIS),
            }
        }
    });
    z
}

/// `c * U`
fn cmul(c: Rat, u: Ps) -> Ps {
    let z = mkps();
    let zz = z.clone();
    go!(move || {
        loop {
            zz.demanded();
            let x = u.get();
            if x.is_end() {
                break;
            }
            zz.answer(c.mul(x));
        }
        zz.answer(FINIS);
    });
    z
}

/// `U - V`
fn sub(u: Ps, v: Ps) -> Ps {
    add(u, cmul(int(1).neg(), v))
}

/// `dU/dx`
fn diff(u: Ps) -> Ps {
    let z = mkps();
    let zz = z.clone();
    go!(move || {
        zz.demanded();
        if !u.get().is_end() {
            let mut i = 1;
            loop {
                let x = u.get();
                if x.is_end() {
                    break;
                }
                zz.answer(int(i).mul(x));
                zz.demanded();
                i += 1;
            }
        }
        zz.answer(FINIS);
    });
    z
}

/// `c + integral of U`
fn integ(c: Rat, u: Ps) -> Ps {
    let z = mkps();
    let zz = z.clone();
    go!(move || {
        zz.put(c);
        let mut i = 1;
        loop {
            zz.demanded();
            let x = u.get();
            if x.is_end() {
                zz.answer(FINIS);
                return;
            }
            zz.answer(rat(1, i).mul(x));
            i += 1;
        }
    });
    z
}

/// `U * V`: with `U = u + x UU` and `V = v + x VV`, `UV = uv + x (u VV + v UU) + x^2 UU VV`.
fn mul(u: Ps, v: Ps) -> Ps {
    let z = mkps();
    let zz = z.clone();
    go!(move || {
        zz.demanded();
        let uv = get2(&u, &v);
        if uv[0].is_end() || uv[1].is_end() {
            zz.answer(FINIS);
            return;
        }
        zz.answer(uv[0].mul(uv[1]));
        let uu = split_ps(u);
        let vv = split_ps(v);
        let w = add(cmul(uv[0], vv[0].clone()), cmul(uv[1], uu[0].clone()));
        zz.demanded();
        zz.answer(w.get());
        let [_, uu1] = uu;
        let [_, vv1] = vv;
        copy(&add(w, mul(uu1, vv1)), &zz);
    });
    z
}

/// `exp(U)` for `U` with constant term 0 (the constant term is ignored): `Z' = Z U'`,
/// integrated, with the output fed back into the product through `split`.
fn exp(u: Ps) -> Ps {
    let zz = [mkps(), mkps()];
    split(integ(int(1), mul(zz[0].clone(), diff(u))), zz.clone());
    let [_, z] = zz;
    z
}

/// `U(c0 x^n)`: each coefficient times `c0^i`, followed by `n - 1` zeros.
fn monsubst(u: Ps, c0: Rat, n: usize) -> Ps {
    let z = mkps();
    let zz = z.clone();
    go!(move || {
        let mut c = int(1);
        loop {
            zz.demanded();
            let x = u.get();
            zz.answer(x.mul(c));
            c = c.mul(c0);
            if x.is_end() {
                zz.put(FINIS);
                return;
            }
            for _ in 1..n {
                zz.put(int(0));
            }
        }
    });
    z
}

/// Reads `count` coefficients of `u`, each must be `c`.
fn check(u: &Ps, c: Rat, count: usize, what: &str) {
    for i in 0..count {
        assert_eq!(u.get(), c, "{what}: term {i}");
    }
}

/// Reads `a.len()` coefficients of `u`, which must be `a`.
fn checka(u: &Ps, a: &[Rat], what: &str) {
    for (i, &c) in a.iter().enumerate() {
        assert_eq!(u.get(), c, "{what}: term {i}");
    }
}

const N: i64 = 10;

#[test]
fn main() {
    run(|| {
        let (zero, one) = (int(0), int(1));
        let ones = rep(one);
        let twos = rep(int(2));
        check(&ones, one, 5, "Ones");
        check(&add(ones.clone(), ones.clone()), int(2), 5, "Add Ones Ones");
        check(&add(ones.clone(), twos.clone()), int(3), 5, "Add Ones Twos");
        let a: Vec<Rat> = (1..=N).map(int).collect();
        checka(&diff(ones.clone()), &a, "Diff"); // 1 2 3 4 5
        let a: Vec<Rat> = std::iter::once(zero).chain((1..N).map(|i| rat(1, i))).collect();
        checka(&integ(zero, ones.clone()), &a, "Integ"); // 0 1 1/2 1/3 1/4
        check(&cmul(one.neg(), twos.clone()), int(-2), 10, "CMul");
        check(&sub(ones.clone(), twos.clone()), int(-1), 5, "Sub Ones Twos");
        let a: Vec<Rat> = (1..=N).map(int).collect();
        checka(&mul(ones.clone(), ones.clone()), &a, "Mul"); // 1 2 3 4 5
        let a = [
            int(1),
            int(1),
            rat(3, 2),
            rat(13, 6),
            rat(73, 24),
            rat(167, 40),
            rat(4051, 720),
            rat(37633, 5040),
            rat(43817, 4480),
            rat(4596553, 362880),
        ];
        checka(&exp(ones.clone()), &a, "Exp"); // exp(x / (1 - x))
        let a: Vec<Rat> =
            (0..N).map(|i| if i % 2 == 0 { zero } else { rat(if i % 4 == 1 { 1 } else { -1 }, i) }).collect();
        checka(&integ(zero, monsubst(ones.clone(), one.neg(), 2)), &a, "ATan"); // 0 1 0 -1/3 0 1/5
    });
}
