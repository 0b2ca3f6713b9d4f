/// What this build is. The version is the image tag (`make image`), the default
/// image in the install bundle, `pxguard --version`, and `pxguard_build_info`.
public enum BuildInfo {
    /// Semantic version of this release; bump it with every released image.
    public static let version = "0.1.0"
    /// The image the install bundle names by default: a versioned tag, never `latest`
    /// (which would also mean pull-always), so that every node runs the same build.
    public static let image = "pxguard:" + version
}
