//! `strom`: the Strom runtime's command line (`validate`, `run`, `explain`,
//! `worker`), with the pipelines compiled into the runtime.

fn main() -> std::process::ExitCode {
    strom_runtime::cli::main(strom_runtime::pipelines::Pipelines::builtin())
}
