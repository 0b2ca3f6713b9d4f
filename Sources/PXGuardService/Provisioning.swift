import PXGuardCore
import PXGuardServer

/// The provisioner as the service sees it: started when a Kubernetes API is
/// configured (flags or in-cluster), otherwise absent and said so once.
final class ProvisionerHandle: Sendable {
    static func start(options: ServeOptions, config: Config, metrics: ServiceMetrics, logger: Logger)
        throws(CommandError) -> ProvisionerHandle?
    {
        nil
    }

    func enqueue(_ namespace: String) {}
    func stop() {}
    func logStatus() {}
}
