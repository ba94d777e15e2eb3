//! `Stack`: several containers on a private network, started in
//! dependency order and torn down together.

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;

use crate::container::TestContainer;
use crate::error::{Error, Result};
use crate::network::TestNetwork;
use crate::spec::ContainerSpec;

/// A multi-container deployment for a test: services on their own network,
/// each reachable by the others under its service name.
///
/// `start()` starts services whose dependencies are up, independent ones in
/// parallel, each waited ready (its spec's [`wait_for`]) before its
/// dependents start. A cycle or an unknown dependency is an
/// [`Error::InvalidSpec`] before anything is created; a service that fails
/// to start takes the whole stack down.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::{ContainerSpec, HostImage, Stack, WaitFor};
///
/// let stack = Stack::new()
///     .service("db", ContainerSpec::new(HostImage::shell()).cmd(["sleep", "infinity"]))
///     .service("app", ContainerSpec::new(HostImage::shell()).cmd(["sleep", "infinity"]))
///     .depends_on("app", "db")
///     .start()
///     .await?;
/// stack["app"].exec_ok(["sh", "-c", "getent hosts db || true"]).await?;
/// stack.teardown().await?;
/// # Ok(()) }
/// ```
///
/// [`wait_for`]: ContainerSpec::wait_for
#[must_use = "a Stack does nothing until `.start()` is awaited"]
#[derive(Debug, Default)]
pub struct Stack {
    services: Vec<(String, ContainerSpec)>,
    edges: Vec<(String, String)>,
}

impl Stack {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a service: a container reachable on the stack's network as
    /// `name`.
    pub fn service(mut self, name: impl Into<String>, spec: ContainerSpec) -> Self {
        self.services.push((name.into(), spec));
        self
    }

    /// `service` starts only once `on` is started and ready.
    pub fn depends_on(mut self, service: impl Into<String>, on: impl Into<String>) -> Self {
        self.edges.push((service.into(), on.into()));
        self
    }

    /// The services in start order, grouped in waves that can start
    /// together.
    fn waves(&self) -> Result<Vec<Vec<usize>>> {
        let index: HashMap<&str, usize> = self
            .services
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect();
        if index.len() != self.services.len() {
            return Err(Error::InvalidSpec(
                "a stack has two services with the same name".into(),
            ));
        }
        let mut deps: Vec<HashSet<usize>> = vec![HashSet::new(); self.services.len()];
        for (from, to) in &self.edges {
            let (Some(&f), Some(&t)) = (index.get(from.as_str()), index.get(to.as_str())) else {
                let unknown = if index.contains_key(from.as_str()) {
                    to
                } else {
                    from
                };
                return Err(Error::InvalidSpec(format!(
                    "stack: no service `{unknown}` (in `{from}` depends on `{to}`)"
                )));
            };
            deps[f].insert(t);
        }
        let mut done: HashSet<usize> = HashSet::new();
        let mut waves = Vec::new();
        while done.len() < self.services.len() {
            let wave: Vec<usize> = (0..self.services.len())
                .filter(|i| !done.contains(i) && deps[*i].is_subset(&done))
                .collect();
            if wave.is_empty() {
                let stuck: Vec<&str> = (0..self.services.len())
                    .filter(|i| !done.contains(i))
                    .map(|i| self.services[i].0.as_str())
                    .collect();
                return Err(Error::InvalidSpec(format!(
                    "stack has a dependency cycle among: {}",
                    stuck.join(", ")
                )));
            }
            done.extend(&wave);
            waves.push(wave);
        }
        Ok(waves)
    }

    /// Creates the network and starts every service.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] for a cycle, an unknown or duplicate service,
    /// before anything is created; otherwise the first service's error,
    /// after everything started so far is removed.
    pub async fn start(self) -> Result<TestStack> {
        let waves = self.waves()?;
        let network = TestNetwork::new().await?;
        let mut specs: Vec<Option<(String, ContainerSpec)>> =
            self.services.into_iter().map(Some).collect();
        let mut stack = TestStack {
            containers: Vec::new(),
            network,
        };
        for wave in waves {
            let starts = wave.into_iter().map(|i| {
                let (name, spec) = specs[i].take().expect("each service starts once");
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                let spec = match spec.name.is_some() {
                    true => spec,
                    false => spec.name(format!("{name}-{}", &suffix[..8])),
                };
                let spec = spec
                    .network(stack.network.name())
                    .network_alias(name.clone());
                async move { (name, spec.start().await) }
            });
            let mut failed = None;
            for (name, started) in join_all(starts).await {
                match started {
                    Ok(c) => stack.containers.push((name, c)),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                let _ = stack.teardown().await;
                return Err(e);
            }
        }
        Ok(stack)
    }
}

/// A started [`Stack`]: its containers by service name, and its network.
/// Removed on [`teardown`](TestStack::teardown) or `Drop`.
#[must_use = "dropping a TestStack removes its containers and network"]
#[derive(Debug)]
pub struct TestStack {
    // Containers before the network: fields drop in order, and the network
    // can only go once its containers have.
    containers: Vec<(String, TestContainer)>,
    network: TestNetwork,
}

impl TestStack {
    /// The container of `service`, if the stack has one.
    pub fn get(&self, service: &str) -> Option<&TestContainer> {
        self.containers
            .iter()
            .find(|(n, _)| n == service)
            .map(|(_, c)| c)
    }

    /// The stack's network.
    pub fn network(&self) -> &TestNetwork {
        &self.network
    }

    /// Removes every container, then the network.
    ///
    /// # Errors
    ///
    /// The first removal that failed; the others are still attempted.
    pub async fn teardown(self) -> Result<()> {
        let TestStack {
            containers,
            network,
        } = self;
        let results = join_all(containers.into_iter().map(|(_, c)| c.teardown())).await;
        let net = network.teardown().await;
        results.into_iter().chain([net]).collect()
    }
}

impl std::ops::Index<&str> for TestStack {
    type Output = TestContainer;

    /// # Panics
    ///
    /// If the stack has no such service.
    fn index(&self, service: &str) -> &TestContainer {
        self.get(service)
            .unwrap_or_else(|| panic!("this stack has no service `{service}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(names: &[&str], edges: &[(&str, &str)]) -> Stack {
        let mut s = Stack::new();
        for n in names {
            s = s.service(*n, ContainerSpec::new("img"));
        }
        for (a, b) in edges {
            s = s.depends_on(*a, *b);
        }
        s
    }

    #[test]
    fn waves_follow_dependencies_and_group_independent_services() {
        let s = stack(
            &["web", "db", "cache", "worker"],
            &[("web", "db"), ("web", "cache"), ("worker", "web")],
        );
        assert_eq!(s.waves().unwrap(), vec![vec![1, 2], vec![0], vec![3]]);
    }

    #[test]
    fn cycles_and_unknown_services_are_refused() {
        let err = stack(&["a", "b", "c"], &[("a", "b"), ("b", "a")])
            .waves()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid container spec: stack has a dependency cycle among: a, b"
        );
        let err = stack(&["a"], &[("a", "ghost")]).waves().unwrap_err();
        assert!(err.to_string().contains("no service `ghost`"), "{err}");
        let err = stack(&["a", "a"], &[]).waves().unwrap_err();
        assert!(err.to_string().contains("same name"), "{err}");
    }
}
