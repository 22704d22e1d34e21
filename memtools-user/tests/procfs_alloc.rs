//! The /proc backend allocates nothing per sample once it is following its processes.
//!
//! A counting global allocator counts allocations made on the polling thread only, so the test
//! harness's own threads do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use memtools_user::record::procfs::Procfs;
use memtools_user::record::{Backend, Clock, Event, RecordError, Scope, Sink};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts samples without allocating.
struct CountSamples(u64);

impl Sink for CountSamples {
    fn event(&mut self, e: Event<'_>) -> Result<(), RecordError> {
        if let Event::Sample(..) = e {
            self.0 += 1;
        }
        Ok(())
    }
}

#[test]
fn steady_state_polling_allocates_nothing() {
    // Follow this process and a few children that sit still.
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap()
        })
        .collect();
    let mut backend = Procfs::new(Scope::Tree {
        roots: vec![std::process::id()],
        reaper: None,
    })
    .unwrap();
    let clock = Clock::start();
    let mut sink = CountSamples(0);
    // Warm up: the first polls meet every process on the machine once.
    for _ in 0..3 {
        backend.poll(&clock, &mut sink).unwrap();
    }
    assert_eq!(backend.followed(), 5);
    let before_samples = sink.0;
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..200 {
        backend.poll(&clock, &mut sink).unwrap();
    }
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    let samples = sink.0 - before_samples;
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(samples, 200 * 5);
    // Processes started elsewhere on the machine meanwhile are looked at once each (a path
    // and a stat read), which may allocate; following the same processes must not.
    assert!(
        allocations <= 8,
        "{allocations} allocations in 200 polls of {samples} samples"
    );
}
