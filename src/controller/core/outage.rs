//! The objects that failed because PrivX was not serving (an outage answer, or a call refused
//! by the service's open circuit breaker), by controller and service. When the breaker closes
//! again, the runner retries them at once instead of letting each wait out its own backoff
//! (which by then may be a minute); per-object failures keep their backoff.

use std::collections::HashMap;
use std::sync::Mutex;

use privx_client::Service;

/// Keys (`namespace/name` or `name`) by controller, with the service they wait for.
#[derive(Default)]
pub struct OutageWaiters {
    waiting: Mutex<HashMap<&'static str, HashMap<String, Service>>>,
}

impl OutageWaiters {
    /// `key` of `controller` failed because `service` is not serving.
    pub fn wait(&self, controller: &'static str, key: &str, service: Service) {
        self.lock()
            .entry(controller)
            .or_default()
            .insert(key.to_string(), service);
    }

    /// `key` of `controller` succeeded, failed for another reason, or is gone.
    pub fn forget(&self, controller: &'static str, key: &str) {
        if let Some(keys) = self.lock().get_mut(controller) {
            keys.remove(key);
        }
    }

    /// Takes every key that waits for `service`, by controller.
    pub fn take(&self, service: Service) -> Vec<(&'static str, String)> {
        let mut taken = Vec::new();
        for (controller, keys) in self.lock().iter_mut() {
            keys.retain(|key, waits_for| {
                if *waits_for == service {
                    taken.push((*controller, key.clone()));
                    false
                } else {
                    true
                }
            });
        }
        taken
    }

    pub fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, HashMap<String, Service>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_wait_for_their_service_until_taken_or_forgotten() {
        let w = OutageWaiters::default();
        w.wait("vaultsecret", "demo/a", Service::Vault);
        w.wait("vaultsecret", "demo/b", Service::RoleStore);
        w.wait("passwordpolicy", "p", Service::SecretsManager);
        w.wait("vaultsecret", "demo/c", Service::Vault);
        w.forget("vaultsecret", "demo/c");
        assert_eq!(
            w.take(Service::Vault),
            [("vaultsecret", "demo/a".to_string())]
        );
        assert!(w.take(Service::Vault).is_empty(), "taken once");
        assert_eq!(w.len(), 2);
        assert_eq!(
            w.take(Service::SecretsManager),
            [("passwordpolicy", "p".to_string())]
        );
    }
}
