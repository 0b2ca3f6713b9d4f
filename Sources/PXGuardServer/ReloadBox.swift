public import PXGuardPlatform

/// The serving TLS context, swapped on certificate reload.
public typealias TLSContextBox = ReloadBox<TLSContext>
