import android.graphics.Bitmap

/** Bitmap -> RGB bytes (row by row, 3 bytes a pixel, alpha dropped): the uint8 model's input. */
fun Bitmap.toRgbBytes(): ByteArray {
    val argb = IntArray(width * height)
    getPixels(argb, 0, width, 0, 0, width, height)      // ARGB_8888 ints, whatever the Bitmap's config
    val rgb = ByteArray(argb.size * 3)
    for (i in argb.indices) {
        val p = argb[i]
        rgb[3 * i] = (p shr 16).toByte(); rgb[3 * i + 1] = (p shr 8).toByte(); rgb[3 * i + 2] = p.toByte()
    }
    return rgb
}

/** RGB bytes (the uint8 model's output) -> an opaque ARGB_8888 Bitmap. */
fun rgbBytesToBitmap(rgb: ByteArray, width: Int, height: Int): Bitmap {
    val argb = IntArray(width * height) { i ->
        val r = rgb[3 * i].toInt() and 0xff; val g = rgb[3 * i + 1].toInt() and 0xff; val b = rgb[3 * i + 2].toInt() and 0xff
        (0xff shl 24) or (r shl 16) or (g shl 8) or b
    }
    return Bitmap.createBitmap(argb, width, height, Bitmap.Config.ARGB_8888)
}
