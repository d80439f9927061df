"""The agent side: AMI client, call/queue/agent state, screen pops over MQTT."""
