// Signature stub of ExecuTorch's Android Java API (org.pytorch:executorch-android): only what the snippets call.
package org.pytorch.executorch;

public class EValue {
    public static EValue from(Tensor tensor) { throw new UnsupportedOperationException(); }
    public Tensor toTensor() { throw new UnsupportedOperationException(); }
}
