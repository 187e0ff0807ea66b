//! A global allocator that counts live heap bytes by the part of the process that allocated
//! them: each thread carries a tag (the runtime it belongs to sets it when the thread starts),
//! and each allocation keeps its tag in a small header, so its release is subtracted from the
//! same part whichever thread frees it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// The parts of the in-process benchmark.
#[derive(Clone, Copy, Debug)]
pub enum Part {
    /// The main thread and anything untagged.
    Other = 0,
    /// The operator's runtime: runner, controllers, stores, PrivX and kube clients.
    Operator = 1,
    /// The fake Kubernetes API's runtime.
    FakeApi = 2,
    /// The PrivX simulator's runtime.
    Simulator = 3,
    /// The benchmark's own driver (creates objects, watches for Ready).
    Driver = 4,
}

const PARTS: usize = 5;

static LIVE: [AtomicIsize; PARTS] = [const { AtomicIsize::new(0) }; PARTS];

thread_local! {
    static TAG: Cell<u8> = const { Cell::new(0) };
}

/// Tags the current thread's allocations from now on.
pub fn tag_thread(part: Part) {
    TAG.with(|t| t.set(part as u8));
}

/// Live heap bytes allocated by `part` and not yet freed.
pub fn live(part: Part) -> i64 {
    LIVE[part as usize].load(Ordering::Relaxed) as i64
}

pub struct Tagged;

/// The header in front of each block: at least 16 bytes, and a multiple of the alignment so
/// that the block handed out keeps it. The tag is its last byte.
fn header(layout: &Layout) -> usize {
    layout.align().max(16)
}

fn outer(layout: &Layout) -> Layout {
    // SAFETY of the caller's contract: `size + header` does not overflow for any real request.
    Layout::from_size_align(layout.size() + header(layout), layout.align().max(16))
        .expect("layout with header")
}

unsafe impl GlobalAlloc for Tagged {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = unsafe { System.alloc(outer(&layout)) };
        if base.is_null() {
            return base;
        }
        let tag = TAG.try_with(|t| t.get()).unwrap_or(0);
        LIVE[tag as usize].fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe {
            let block = base.add(header(&layout));
            *block.sub(1) = tag;
            block
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        unsafe {
            let tag = *block.sub(1);
            LIVE[tag as usize].fetch_sub(layout.size() as isize, Ordering::Relaxed);
            System.dealloc(block.sub(header(&layout)), outer(&layout));
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The header's size depends on the alignment only, which a realloc keeps: the block
        // moves with its header and keeps the tag of the part that first allocated it.
        unsafe {
            let head = header(&layout);
            let tag = *block.sub(1);
            let base = System.realloc(block.sub(head), outer(&layout), new_size + head);
            if base.is_null() {
                return base;
            }
            LIVE[tag as usize].fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
            base.add(head)
        }
    }
}
