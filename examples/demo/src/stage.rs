//! Setting up the world the story plays in: emulated AWS (moto, and wiremock for what moto
//! lacks), the checkout service and database, the notification channels, safeship's policy and
//! tables, and the five function binaries, each under a local Lambda Runtime API.

use anyhow::Context as _;
use safeship_testkit::emulators::function_binary;
use safeship_testkit::world::{World, FUNCTIONS};

use crate::timeline::Timeline;

/// The RDS instance of the example policy's `checkout-db`.
pub const INSTANCE: &str = "checkout-prod-db";

/// The world the acts play in (`safeship_testkit::world`), and the timeline they print.
pub struct Stage {
    pub world: World,
    pub t: Timeline,
}

impl std::ops::Deref for Stage {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Stage {
    /// Sets up the world and starts the five functions in it, printing the header and the
    /// functions' cold starts.
    pub async fn build() -> anyhow::Result<Stage> {
        let t = Timeline::start();
        println!("safeship demo: three deployments of checkout/checkout-prod, a night and an operator, through the real function binaries and CLI");
        println!(
            "AWS emulated by moto at {}; by wiremock what moto lacks (CodeDeploy's hook report and StopDeployment,",
            safeship_testkit::emulators::moto_endpoint()
        );
        println!("AppConfig's StartDeployment and deployment listing); deployments finishing (moto's never do) applied by the demo\n");
        let mut world = World::build(INSTANCE).await?;
        t.line(
            "setup",
            format!(
                "policy in SSM {}, idempotency table {}",
                world.parameter, world.idempotency_table
            ),
        );
        for name in FUNCTIONS {
            let cold_start = world.start(name, 1).await?;
            t.line(name, format!("cold start {} ms", cold_start.as_millis()));
        }
        println!();
        Ok(Stage { world, t })
    }

    /// The operator's `safeship` binary with `args`, in the functions' environment (from a
    /// terminal with no stdin): its exit code and what it printed.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        let out = tokio::process::Command::new(function_binary("safeship"))
            .args(args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .env("USER", "the on-call engineer")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("running safeship")?;
        let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
        said.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.code().unwrap_or(-1), said))
    }
}
