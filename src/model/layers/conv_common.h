/* conv_common.h: what the convolution-family layers of this folder share (internal):
 * DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, ZeroPadding2D, UpSampling2D,
 * GlobalMaxPooling2D. */
#ifndef KILN_CONV_COMMON_H
#define KILN_CONV_COMMON_H

#include "layer.h"
#include "layer_json.h"

/* the layer's first input must be an image (batch, H, W, C) */
kiln_status kiln_layer_need_image(const kiln_node *n, const kiln_node *in);
/* n's output (H, W, C) from a conv of its image input with kernel w_shape (kh, kw, in, out)
 * under params p (out_ndim and out_shape set) */
kiln_status kiln_layer_conv_output(kiln_node *n, const kiln_node *in, const int64_t w_shape[4],
                                   const kiln_conv2d_params *p);
/* the depthwise params of a layer: its conv with groups = the input channels */
kiln_conv2d_params kiln_layer_depthwise_params(const kiln_layer_config *c, int64_t channels);
/* the depthwise kernel (kh, kw, C, m) seen as the grouped kernel (kh, kw, 1, C m) */
kiln_tensor kiln_layer_depthwise_kernel(const kiln_tensor *k);

/* the Keras keys a convolution layer shares with Conv2D: kernel_size (required), strides,
 * dilation_rate, padding, data_format, activation, use_bias */
kiln_status kiln_conv_json_read(const kiln_json_layer *j, kiln_layer_config *c);
/* writes them in Keras' order: kernel_size, strides, padding, data_format, dilation_rate
 * (`between`, when not NULL, is written after padding: Conv2DTranspose's output_padding),
 * activation, use_bias */
void kiln_conv_json_write(const kiln_layer_config *c, cJSON *o, const char *between);

#endif
