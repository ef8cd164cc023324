// Shared GLSL helpers: colour encoding, tone mapping, equirect lookup, SH9.
const float PI = 3.14159265358979;

vec3 linear_to_srgb(vec3 c) {
    c = clamp(c, 0.0, 1.0);
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c));
}

// three.js ACESFilmicToneMapping (exposure applied by the caller; three.js divides by 0.6)
vec3 rrt_odt_fit(vec3 v) {
    vec3 a = v * (v + 0.0245786) - 0.000090537;
    vec3 b = v * (0.983729 * v + 0.4329510) + 0.238081;
    return a / b;
}
vec3 aces_filmic(vec3 color) {
    const mat3 ACESInputMat = mat3(vec3(0.59719, 0.07600, 0.02840), vec3(0.35458, 0.90834, 0.13383),
                                   vec3(0.04823, 0.01566, 0.83777));
    const mat3 ACESOutputMat = mat3(vec3(1.60475, -0.10208, -0.00327), vec3(-0.53108, 1.10813, -0.07276),
                                    vec3(-0.07367, -0.00605, 1.07602));
    color /= 0.6;
    color = ACESInputMat * color;
    color = rrt_odt_fit(color);
    color = ACESOutputMat * color;
    return clamp(color, 0.0, 1.0);
}
// Khronos PBR Neutral (as three.js NeutralToneMapping)
vec3 pbr_neutral(vec3 color) {
    const float StartCompression = 0.8 - 0.04;
    const float Desaturation = 0.15;
    float x = min(color.r, min(color.g, color.b));
    float offset = x < 0.08 ? x - 6.25 * x * x : 0.04;
    color -= offset;
    float peak = max(color.r, max(color.g, color.b));
    if (peak < StartCompression) return color;
    float d = 1.0 - StartCompression;
    float newPeak = 1.0 - d * d / (peak + d - StartCompression);
    color *= newPeak / peak;
    float g = 1.0 - 1.0 / (Desaturation * (peak - newPeak) + 1.0);
    return mix(color, vec3(newPeak), g);
}
uniform float u_exposure;
#ifdef TONEMAP
// chosen at compile time (mesh programs): 0 none, 1 ACES filmic (three.js), 2 Khronos PBR neutral
vec3 tonemap(vec3 c) {
    c *= u_exposure;
#if TONEMAP == 1
    return aces_filmic(c);
#elif TONEMAP == 2
    return pbr_neutral(c);
#else
    return c;
#endif
}
#else
uniform int u_tonemap;   // 0 none, 1 ACES filmic (three.js), 2 Khronos PBR neutral
vec3 tonemap(vec3 c) {
    c *= u_exposure;
    if (u_tonemap == 1) return aces_filmic(c);
    if (u_tonemap == 2) return pbr_neutral(c);
    return c;
}
#endif

// equirect: direction -> (u, v) with v = 0 at the top row (first row uploaded), three.js layout
vec2 dir_to_equirect(vec3 d) {
    float u = atan(d.z, d.x) * (0.5 / PI) + 0.5;
    float v = 0.5 - asin(clamp(d.y, -1.0, 1.0)) / PI;
    return vec2(u, v);
}
vec3 equirect_to_dir(vec2 uv) {
    float phi = (uv.x - 0.5) * 2.0 * PI;
    float lat = (0.5 - uv.y) * PI;
    return vec3(cos(lat) * cos(phi), sin(lat), cos(lat) * sin(phi));
}

vec3 sh9(vec3 c[9], vec3 n) {
    float x = n.x, y = n.y, z = n.z;
    return c[0] * 0.282095 + c[1] * (0.488603 * y) + c[2] * (0.488603 * z) + c[3] * (0.488603 * x)
         + c[4] * (1.092548 * x * y) + c[5] * (1.092548 * y * z) + c[6] * (0.315392 * (3.0 * z * z - 1.0))
         + c[7] * (1.092548 * x * z) + c[8] * (0.546274 * (x * x - y * y));
}
