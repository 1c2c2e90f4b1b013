import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/** ELSR x4 in ExecuTorch (elsr_x4_int8_int8io.pte): RGB bytes in (height x width x 3, as Bitmap.toRgbBytes()
 *  gives them), RGB bytes out (4 height x 4 width x 3, for rgbBytesToBitmap). The program's int8 is each byte
 *  with its top bit flipped (xor 0x80); the output tensor, [1, 12, height, 4 width] in channels-last memory,
 *  holds that image's bytes in order (its raw data is what dataAsByteArray returns). */
class ElsrExecuTorch(path: String) {
    private val module = Module.load(path)

    fun upscale(rgb: ByteArray, height: Int, width: Int): ByteArray {
        val lr = ByteArray(rgb.size) { (rgb[it].toInt() xor 0x80).toByte() }
        val shape = longArrayOf(1, height.toLong(), width.toLong(), 3)
        val sr = module.forward(EValue.from(Tensor.fromBlob(lr, shape)))[0].toTensor().dataAsByteArray
        for (i in sr.indices) sr[i] = (sr[i].toInt() xor 0x80).toByte()
        return sr
    }

    fun close() = module.destroy()
}
