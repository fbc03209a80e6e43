fn main() -> Result<(), lambda_runtime::Error> {
    safeship::runtime::run_hook_function(
        traffic_hook::FUNCTION,
        traffic_hook::Deps::from_env,
        traffic_hook::handler,
    )
}
