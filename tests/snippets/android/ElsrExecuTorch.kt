import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/** ELSR x4 in ExecuTorch (elsr_x4_int8_int8io.pte): planar RGB bytes minus 128 in (3 x height x width),
 *  the same out (3 x 4 height x 4 width). Flip each byte's top bit (xor 0x80) to go to and from plain pixels. */
class ElsrExecuTorch(path: String) {
    private val module = Module.load(path)

    fun upscale(planarRgbMinus128: ByteArray, height: Int, width: Int): ByteArray {
        val shape = longArrayOf(1, 3, height.toLong(), width.toLong())
        val lr = Tensor.fromBlob(planarRgbMinus128, shape)
        return module.forward(EValue.from(lr))[0].toTensor().dataAsByteArray
    }

    fun close() = module.destroy()
}
