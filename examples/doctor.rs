//! Prints which engine testdock uses and what works with it.
//!
//! `cargo run --example doctor` — handy at the top of a CI log.

#[tokio::main]
async fn main() {
    match testdock::doctor().await {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("testdock doctor: {e}");
            std::process::exit(1);
        }
    }
}
