//! The `keygate` binary: everything lives in the library.

/// jemalloc instead of glibc's malloc, so that memory freed by a burst goes back to
/// the system: its background thread, started below, purges freed pages.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("warning: memory freed by closed connections will not be handed back: {e}");
    }
    keygate::cli::main()
}
