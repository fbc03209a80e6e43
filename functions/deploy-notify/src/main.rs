fn main() -> Result<(), lambda_runtime::Error> {
    safeship::runtime::run(
        deploy_notify::FUNCTION,
        deploy_notify::Deps::from_env,
        deploy_notify::handler,
    )
}
