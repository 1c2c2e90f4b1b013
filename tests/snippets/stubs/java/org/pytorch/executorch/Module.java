// Signature stub of ExecuTorch's Android Java API (org.pytorch:executorch-android): only what the snippets call.
package org.pytorch.executorch;

public class Module {
    public static Module load(String modelPath) { throw new UnsupportedOperationException(); }
    public EValue[] forward(EValue... inputs) { throw new UnsupportedOperationException(); }
    public void destroy() { throw new UnsupportedOperationException(); }
}
