//! Try-it mode (`run --embedded-privx`): the PrivX simulator in-process, as PrivX.
//!
//! Only the developer build (default feature `embedded-privx`) carries the simulator; the release
//! image is built without it, and there the flag is a clear start-up error.

use std::net::SocketAddr;

use privx_client::Credentials;

/// The simulator running in this process, and the credentials of its demo API client.
pub struct Embedded {
    #[cfg(feature = "embedded-privx")]
    sim: privx_sim::Simulator,
    pub base_url: String,
    pub credentials: Credentials,
}

impl Embedded {
    #[cfg(feature = "embedded-privx")]
    pub async fn start(listen: SocketAddr) -> anyhow::Result<Self> {
        use anyhow::Context;
        let sim = privx_sim::Simulator::start(privx_sim::SimOptions {
            listen,
            ..Default::default()
        })
        .await
        .context("starting the embedded PrivX simulator")?;
        let c = sim.credentials();
        let credentials = Credentials {
            oauth_client_id: c.oauth_client_id.clone(),
            oauth_client_secret: c.oauth_client_secret.clone(),
            api_client_id: c.api_client_id.clone(),
            api_client_secret: c.api_client_secret.clone(),
        };
        Ok(Self {
            base_url: sim.base_url(),
            credentials,
            sim,
        })
    }

    #[cfg(not(feature = "embedded-privx"))]
    pub async fn start(_listen: SocketAddr) -> anyhow::Result<Self> {
        anyhow::bail!(
            "--embedded-privx: this build carries no PrivX simulator (built without the \
             `embedded-privx` feature, as the release image is); use --privx-url"
        )
    }

    pub async fn shutdown(self) {
        #[cfg(feature = "embedded-privx")]
        self.sim.shutdown().await;
    }
}
