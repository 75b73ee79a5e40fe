use std::process::ExitCode;

// mimalloc rather than the libc's malloc: the image links musl, whose malloc made an edit at
// 10,000 flows take 1.8 times as long (p50 337 against 221 ms; operator/benches/README.md,
// "The allocator, and the binary the image ships"), and with one allocator on every libc the
// benches measure what the image runs. Built without its transparent-huge-page advice: the
// operator idled at 37–42 MiB instead of 24 on a node with THP `always`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A reconcile at 10,000 flows frees tens of megabytes at once. mimalloc hands freed pages
    // back after a delay, counted only while the thread keeps allocating, so between edits the
    // pages stayed resident (148 to 215 MiB over 20 edits). Without the delay the resident size
    // returns to where it was after each reconcile.
    // SAFETY: sets a global option of the allocator; takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    sluice::cli::main()
}

/// `mi_option_purge_delay` in the bundled mimalloc.h (`enum mi_option_e`), which
/// libmimalloc-sys does not name; the test below fails if the index moves.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(test)]
mod tests {
    use super::MI_OPTION_PURGE_DELAY;

    #[test]
    fn the_purge_delay_option_index_names_the_purge_delay() {
        // Its default in the bundled mimalloc v3 (1,000 ms, options.c), which no option at a
        // neighbouring index has (eager_commit_delay 1, use_numa_nodes 0). Read only.
        // SAFETY: reads a global option of the allocator; takes no pointers.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
