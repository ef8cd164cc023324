#version 330 core
//#include common.glsl
in vec2 v_offset;
in vec3 v_conic;
in vec4 v_rgba;
layout(location = 0) out vec4 o_color;
void main() {
    vec2 d = v_offset;
    float power = -0.5 * (v_conic.x * d.x * d.x + 2.0 * v_conic.y * d.x * d.y + v_conic.z * d.y * d.y);
    if (power > 0.0) discard;
    float alpha = min(0.99, v_rgba.a * exp(power));
    if (alpha < 1.0 / 255.0) discard;
    // SH colours are display sRGB, as 3DGS trains them and every splat viewer shows them: no
    // encoding and no tone mapping (the mesh shading is scene-referred, splats are display-referred)
    o_color = vec4(clamp(v_rgba.rgb, 0.0, 1.0), alpha);
}
