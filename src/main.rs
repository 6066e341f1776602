use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pgstorage::config::Cli::parse();
    pgstorage::cli::run(cli)
}
