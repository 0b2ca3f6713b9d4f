// Kubernetes API client and provisioner (see Client.swift, Provisioner.swift).
