"""The chaos harness: orders under faults, audited from the outside (`make chaos`)."""
