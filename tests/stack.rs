//! Networks and stacks: containers reach each other by alias; a stack
//! starts in dependency order and goes away as one.

mod common;

use std::time::Duration;

use common::{eventually, exists, shell, shell_with_perl, sleeper, unique};
use testdock::{ContainerSpec, Error, Stack, TestNetwork, WaitFor};

/// Greets every client on 8080, after `delay` seconds.
fn greeter(delay: &str) -> ContainerSpec {
    let script = format!(
        "use IO::Socket::INET; sleep {delay}; \
         my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die; \
         while (my $c = $s->accept) {{ print $c \"hello from server\\n\"; close $c }}"
    );
    ContainerSpec::new(shell_with_perl()).cmd(["perl", "-e", &script])
}

async fn network_exists(id: &str) -> bool {
    let d = testdock::docker().await.unwrap();
    d.bollard()
        .inspect_network(
            id,
            None::<testdock::bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .is_ok()
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn containers_on_a_test_network_reach_each_other_by_alias() {
    let net = TestNetwork::new().await.unwrap();
    let d = testdock::docker().await.unwrap();
    let info = d
        .bollard()
        .inspect_network(
            net.id(),
            None::<testdock::bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    assert_eq!(
        info.labels.unwrap()["testdock.session"],
        testdock::session_id()
    );

    let server = greeter("0")
        .network(net.name())
        .network_alias("greeter")
        .wait_for(WaitFor::port(8080))
        .start()
        .await
        .unwrap();
    let client = sleeper().network(net.name()).start().await.unwrap();
    let out = client
        .exec(["bash", "-c", "exec 3<>/dev/tcp/greeter/8080; cat <&3"])
        .timeout(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        out.stdout_text(),
        "hello from server\n",
        "{}",
        out.stderr_text()
    );

    // Dropped containers are removed in the background; the network's
    // teardown waits for them.
    drop(client);
    drop(server);
    let id = net.id().to_string();
    net.teardown().await.unwrap();
    assert!(!network_exists(&id).await);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_dropped_network_is_removed() {
    let net = TestNetwork::new().await.unwrap();
    let id = net.id().to_string();
    drop(net);
    eventually(Duration::from_secs(10), "network removed", || {
        let id = id.clone();
        async move { !network_exists(&id).await }
    })
    .await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_two_service_stack_where_the_client_waits_for_the_server_by_alias() {
    let stack = Stack::new()
        .service("client", {
            ContainerSpec::new(shell())
                .cmd([
                    "bash",
                    "-c",
                    "exec 3<>/dev/tcp/server/8080 && cat <&3; exec sleep infinity",
                ])
                .wait_for(WaitFor::stdout_line("hello from server"))
        })
        .service("server", greeter("1").wait_for(WaitFor::port(8080)))
        .depends_on("client", "server")
        .start()
        .await
        .unwrap();
    let logs = stack["client"].logs().await.unwrap();
    assert_eq!(logs.stdout_text(), "hello from server\n");
    assert!(
        stack["server"].name().starts_with("server-"),
        "{}",
        stack["server"].name()
    );
    assert!(stack.get("nope").is_none());

    let ids: Vec<String> = ["client", "server"]
        .iter()
        .map(|s| stack[*s].id().to_string())
        .collect();
    let net = stack.network().id().to_string();
    stack.teardown().await.unwrap();
    for id in ids {
        assert!(!exists(&id).await);
    }
    assert!(!network_exists(&net).await);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn independent_services_start_together_and_a_failure_takes_the_stack_down() {
    let good = unique("good");
    let err = Stack::new()
        .service("good", sleeper().name(good.clone()))
        .service("bad", {
            ContainerSpec::new(shell())
                .cmd(["sh", "-c", "echo cannot start >&2; exit 2"])
                .wait_for(WaitFor::log_line("started"))
        })
        .service("after", sleeper())
        .depends_on("after", "bad")
        .start()
        .await
        .unwrap_err();
    match &err {
        Error::NotReady {
            container, outcome, ..
        } => {
            assert!(container.starts_with("bad-"), "{container}");
            assert_eq!(outcome, "it exited with code 2");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert!(
        !exists(&good).await,
        "the stack's other service was left behind"
    );
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_cycle_is_refused_before_anything_is_created() {
    let name = unique("cyclic");
    let err = Stack::new()
        .service("a", sleeper().name(name.clone()))
        .service("b", sleeper())
        .depends_on("a", "b")
        .depends_on("b", "a")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert!(err.to_string().contains("cycle"), "{err}");
    assert!(!exists(&name).await);
}
