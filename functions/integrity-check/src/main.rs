fn main() -> Result<(), lambda_runtime::Error> {
    safeship::runtime::run(
        integrity_check::FUNCTION,
        integrity_check::Deps::from_env,
        integrity_check::handler,
    )
}
