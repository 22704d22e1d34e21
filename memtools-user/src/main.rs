//! `memtools-user`: see `memtools-user --help`.

use clap::Parser;

fn main() {
    let cli = memtools_user::cli::Cli::parse();
    match memtools_user::commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("memtools-user: {e:#}");
            std::process::exit(1);
        }
    }
}
