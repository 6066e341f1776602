use clap::Parser;

// Every request allocates and frees many small buffers (headers, rows, JSON), often on another
// thread than the one that allocated them; mimalloc's per-thread free lists serve that with a
// fraction of glibc's work (profiled: malloc and free were a tenth of a GET's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = pgstorage::config::Cli::parse();
    pgstorage::cli::run(cli)
}
