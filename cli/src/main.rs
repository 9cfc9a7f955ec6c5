//! `artifact`: see the crate docs of `cli`.

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: RuntimeError: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(cli::run(std::env::args_os().collect()));
    std::process::exit(code);
}
