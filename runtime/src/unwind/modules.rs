//! The loaded modules and copies of their unwind tables (`dl_iterate_phdr`), so that no walk
//! reads a module that a later `dlclose` unmapped.

use std::ffi::CStr;
use std::ops::Range;

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;

/// One loaded ELF object with its unwind tables (copied, so no later `dlclose` can unmap
/// what a walk reads).
pub(super) struct Loaded {
    pub(super) name: String,
    /// Load bias: runtime address minus the address the file states.
    pub(super) bias: usize,
    /// Runtime range of its executable segments.
    pub(super) text: Range<usize>,
    pub(super) eh_frame_hdr_svma: Range<u64>,
    pub(super) eh_frame_hdr: Vec<u8>,
    pub(super) eh_frame_svma: Range<u64>,
    pub(super) eh_frame: Vec<u8>,
}

/// Every object loaded now that has an `.eh_frame_hdr`.
pub(super) fn loaded() -> Vec<Loaded> {
    let mut out: Vec<Loaded> = Vec::new();
    unsafe extern "C" fn cb(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> i32 {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and
        // `data` is the `out` vector passed below, used by this thread only.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Loaded>)) };
        // SAFETY: the loader's program headers for this object, `dlpi_phnum` of them,
        // mapped while the object is loaded (it cannot be unloaded during the callback).
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        // SAFETY: as above; reads happen during the callback only and are copied out.
        if let Some(m) = unsafe { describe(info, phdrs) } {
            out.push(m);
        }
        0
    }
    // SAFETY: cb matches dl_iterate_phdr's callback type and only touches `out`.
    unsafe { libc::dl_iterate_phdr(Some(cb), &mut out as *mut Vec<Loaded> as *mut libc::c_void) };
    out
}

/// # Safety
///
/// `info` and `phdrs` describe an object that stays loaded during the call.
unsafe fn describe(info: &libc::dl_phdr_info, phdrs: &[libc::Elf64_Phdr]) -> Option<Loaded> {
    let bias = info.dlpi_addr as usize;
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    let mut hdr: Option<&libc::Elf64_Phdr> = None;
    for ph in phdrs {
        if ph.p_type == PT_LOAD && ph.p_flags & PF_X != 0 {
            lo = lo.min(bias + ph.p_vaddr as usize);
            hi = hi.max(bias + (ph.p_vaddr + ph.p_memsz) as usize);
        } else if ph.p_type == PT_GNU_EH_FRAME {
            hdr = Some(ph);
        }
    }
    let hdr = hdr?;
    if lo >= hi {
        return None;
    }
    let hdr_addr = bias + hdr.p_vaddr as usize;
    // The segment the table lies in bounds every read of it.
    let in_segment = |addr: usize| {
        phdrs.iter().filter(|p| p.p_type == PT_LOAD).find_map(|p| {
            let s = bias + p.p_vaddr as usize;
            let e = s + p.p_memsz as usize;
            (s..e).contains(&addr).then_some(e)
        })
    };
    let hdr_seg_end = in_segment(hdr_addr)?;
    let hdr_len = (hdr.p_memsz as usize).min(hdr_seg_end - hdr_addr);
    // SAFETY: [hdr_addr, hdr_addr + hdr_len) lies inside a loaded PT_LOAD segment.
    let hdr_bytes = unsafe { std::slice::from_raw_parts(hdr_addr as *const u8, hdr_len) };
    let eh_frame_addr = eh_frame_ptr(hdr_bytes, hdr_addr)?;
    let seg_end = in_segment(eh_frame_addr)?;
    // SAFETY: [eh_frame_addr, seg_end) lies inside a loaded PT_LOAD segment.
    let seg = unsafe { std::slice::from_raw_parts(eh_frame_addr as *const u8, seg_end - eh_frame_addr) };
    let eh_frame = &seg[..eh_frame_len(seg)];
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: the loader's NUL-terminated name for this object.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
    };
    let svma = |a: usize, len: usize| (a - bias) as u64..(a - bias + len) as u64;
    Some(Loaded {
        name,
        bias,
        text: lo..hi,
        eh_frame_hdr_svma: svma(hdr_addr, hdr_bytes.len()),
        eh_frame_hdr: hdr_bytes.to_vec(),
        eh_frame_svma: svma(eh_frame_addr, eh_frame.len()),
        eh_frame: eh_frame.to_vec(),
    })
}

/// The runtime address of `.eh_frame`, from the header's `eh_frame_ptr` (LSB: version 1,
/// then the pointer's encoding, two more encodings, then the pointer).
fn eh_frame_ptr(hdr: &[u8], hdr_addr: usize) -> Option<usize> {
    if hdr.len() < 4 || hdr[0] != 1 {
        return None;
    }
    let enc = hdr[1];
    let field = &hdr[4..];
    let raw: i64 = match enc & 0x0f {
        0x00 | 0x04 | 0x0c => i64::from_le_bytes(field.get(..8)?.try_into().ok()?),
        0x03 => u32::from_le_bytes(field.get(..4)?.try_into().ok()?) as i64,
        0x0b => i32::from_le_bytes(field.get(..4)?.try_into().ok()?) as i64,
        0x02 => u16::from_le_bytes(field.get(..2)?.try_into().ok()?) as i64,
        0x0a => i16::from_le_bytes(field.get(..2)?.try_into().ok()?) as i64,
        _ => return None,
    };
    let base = match enc & 0x70 {
        0x00 => 0,
        0x10 => hdr_addr as i64 + 4, // pc-relative: relative to the field itself
        0x30 => hdr_addr as i64,     // data-relative: relative to the header
        _ => return None,
    };
    usize::try_from(base.wrapping_add(raw)).ok()
}

/// The length of the `.eh_frame` records at the start of `seg`: CIEs and FDEs up to the zero
/// terminator (or the segment's end).
fn eh_frame_len(seg: &[u8]) -> usize {
    let mut off = 0usize;
    while let Some(b) = seg.get(off..off + 4) {
        let len = u32::from_le_bytes(b.try_into().unwrap()) as usize;
        if len == 0 {
            return off + 4;
        }
        let rec = if len == 0xffff_ffff {
            match seg.get(off + 4..off + 12) {
                Some(b) => 12 + u64::from_le_bytes(b.try_into().unwrap()) as usize,
                None => return off,
            }
        } else {
            4 + len
        };
        match off.checked_add(rec) {
            Some(next) if next <= seg.len() => off = next,
            _ => return off,
        }
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eh_frame_len_stops_at_terminator() {
        let mut v = Vec::new();
        v.extend_from_slice(&8u32.to_le_bytes());
        v.extend_from_slice(&[1; 8]);
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&[2; 4]);
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&[9; 32]);
        assert_eq!(eh_frame_len(&v), 12 + 8 + 4);
        // A record running past the end is not counted.
        assert_eq!(eh_frame_len(&v[..10]), 0);
    }

    #[test]
    fn eh_frame_ptr_encodings() {
        // pcrel|sdata4: -0x10 from the field at hdr+4.
        let hdr = [1, 0x1b, 0x03, 0x3b, 0xf0, 0xff, 0xff, 0xff];
        assert_eq!(eh_frame_ptr(&hdr, 0x1000), Some(0x1000 + 4 - 0x10));
        let hdr = [1, 0x03, 0, 0, 0x00, 0x20, 0, 0];
        assert_eq!(eh_frame_ptr(&hdr, 0x1000), Some(0x2000));
        assert_eq!(eh_frame_ptr(&[2, 0x03, 0, 0, 0, 0, 0, 0], 0), None);
    }

    #[test]
    fn finds_this_binary() {
        let here = finds_this_binary as *const () as usize;
        let mods = loaded();
        let m = mods.iter().find(|m| m.text.contains(&here)).expect("the test binary is a module");
        assert!(m.eh_frame.len() > 1000, "{}", m.eh_frame.len());
        assert_eq!(m.eh_frame_hdr[0], 1);
    }
}
