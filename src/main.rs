use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    chatd::telemetry::init();
    match chatd::cli::run(chatd::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chatd: {}", chatd::problems::error_text(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
