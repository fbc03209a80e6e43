fn main() -> Result<(), lambda_runtime::Error> {
    safeship::runtime::run_hook_function(
        predeploy_snapshot::FUNCTION,
        predeploy_snapshot::Deps::from_env,
        predeploy_snapshot::handler,
    )
}
