//! `strom`: the Strom runtime's command line (`validate`, `run`, `explain`,
//! `worker`), with the pipelines compiled into the runtime.

/// Strom's allocator (`strom_runtime::Allocator`).
#[global_allocator]
static ALLOCATOR: strom_runtime::Allocator = strom_runtime::Allocator;

fn main() -> std::process::ExitCode {
    strom_runtime::cli::main(strom_runtime::pipelines::Pipelines::builtin())
}
