use clap::Parser;

// Every request allocates and frees many small buffers (headers, rows, JSON), often on another
// thread than the one that allocated them; mimalloc's per-thread free lists serve that with a
// fraction of glibc's work (profiled: malloc and free were a tenth of a GET's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc (v3) keeps freed memory for a second before returning it, and this machine's kernel
// backs large aligned mappings with transparent huge pages, so a 2 MiB page stays resident
// for every region a passing buffer touched: a 1 GiB upload peaked at 51 to 67 MiB. Freed
// memory now goes back at once and the process uses small pages (peak below 30 MiB), for no
// measurable CPU per request. Index from mimalloc v3's `mi_option_e` (the crate does not name
// it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // SAFETY: a plain setter of mimalloc's option table, called before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    // Best effort: a kernel without the flag keeps its default.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = pgstorage::config::Cli::parse();
    pgstorage::cli::run(cli)
}
