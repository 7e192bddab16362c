"""The local cluster's layouts: combined broker+controller nodes, or brokers beside dedicated
controllers (how production clusters run, and what the chaos run's 3-broker cluster uses)."""

from __future__ import annotations

from pathlib import Path

from orderflow.tools.localkafka import KafkaCluster


def _properties(cluster: KafkaCluster, node_id: int) -> dict[str, str]:
    node = next(p for p in cluster.members if p.node_id == node_id)
    lines = cluster._server_properties(node).splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_combined_nodes_are_brokers_and_the_controller_quorum(tmp_path: Path) -> None:
    cluster = KafkaCluster(state_dir=tmp_path, nodes=3, base_port=30000)
    assert [p.roles for p in cluster.members] == ["broker,controller"] * 3
    props = _properties(cluster, 2)
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:30001,2@127.0.0.1:30003,3@127.0.0.1:30005"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:30002,CONTROLLER://127.0.0.1:30003"
    assert cluster.bootstrap == "127.0.0.1:30000,127.0.0.1:30002,127.0.0.1:30004"


def test_dedicated_controllers_form_the_quorum_and_serve_no_clients(tmp_path: Path) -> None:
    cluster = KafkaCluster(state_dir=tmp_path, nodes=3, base_port=30000, controllers=3)
    assert [(p.node_id, p.roles) for p in cluster.members] == [
        (1, "broker"),
        (2, "broker"),
        (3, "broker"),
        (4, "controller"),
        (5, "controller"),
        (6, "controller"),
    ]
    # Clients and a broker fault see only the brokers.
    assert [p.node_id for p in cluster.ports] == [1, 2, 3]
    assert cluster.bootstrap == "127.0.0.1:30000,127.0.0.1:30002,127.0.0.1:30004"
    broker, controller = _properties(cluster, 1), _properties(cluster, 5)
    voters = "4@127.0.0.1:30007,5@127.0.0.1:30009,6@127.0.0.1:30011"
    assert broker["controller.quorum.voters"] == controller["controller.quorum.voters"] == voters
    assert broker["process.roles"] == "broker"
    assert broker["listeners"] == "PLAINTEXT://127.0.0.1:30000"
    assert broker["min.insync.replicas"] == "2"
    assert controller["process.roles"] == "controller"
    assert controller["listeners"] == "CONTROLLER://127.0.0.1:30009"
    assert "advertised.listeners" not in controller  # a controller-only node has no client port
