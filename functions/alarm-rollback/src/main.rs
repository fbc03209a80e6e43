fn main() -> Result<(), lambda_runtime::Error> {
    safeship::runtime::run(
        alarm_rollback::FUNCTION,
        alarm_rollback::Deps::from_env,
        alarm_rollback::handler,
    )
}
