// Signature stub of ExecuTorch's Android Java API (org.pytorch:executorch-android): only what the snippets call.
package org.pytorch.executorch;

public abstract class Tensor {
    public static Tensor fromBlob(byte[] data, long[] shape) { throw new UnsupportedOperationException(); }
    public static Tensor fromBlob(float[] data, long[] shape) { throw new UnsupportedOperationException(); }
    public long[] shape() { throw new UnsupportedOperationException(); }
    public byte[] getDataAsByteArray() { throw new UnsupportedOperationException(); }
    public float[] getDataAsFloatArray() { throw new UnsupportedOperationException(); }
}
