#version 330 core
// GGX-prefiltered equirect for one roughness (split-sum, N = V = R), filtered importance sampling.
//#include common.glsl
uniform sampler2D u_src;      // source equirect with a full mip chain
uniform vec2 u_size;          // target size in texels
uniform vec2 u_src_size;
uniform float u_roughness;
uniform int u_samples;
out vec4 o_color;

vec2 hammersley(uint i, uint n) {
    uint b = i;
    b = (b << 16u) | (b >> 16u);
    b = ((b & 0x55555555u) << 1u) | ((b & 0xAAAAAAAAu) >> 1u);
    b = ((b & 0x33333333u) << 2u) | ((b & 0xCCCCCCCCu) >> 2u);
    b = ((b & 0x0F0F0F0Fu) << 4u) | ((b & 0xF0F0F0F0u) >> 4u);
    b = ((b & 0x00FF00FFu) << 8u) | ((b & 0xFF00FF00u) >> 8u);
    return vec2(float(i) / float(n), float(b) * 2.3283064365386963e-10);
}

void main() {
    vec2 uv = gl_FragCoord.xy / u_size;   // row 0 of the target = top of the equirect (v = 0)
    vec3 N = equirect_to_dir(uv);
    vec3 up = abs(N.y) < 0.999 ? vec3(0.0, 1.0, 0.0) : vec3(1.0, 0.0, 0.0);
    vec3 T = normalize(cross(up, N));
    vec3 B = cross(N, T);
    float a = max(u_roughness * u_roughness, 1e-4);
    float a2 = a * a;
    float omega_p = 4.0 * PI / (u_src_size.x * u_src_size.y);
    vec3 acc = vec3(0.0);
    float wsum = 0.0;
    for (int i = 0; i < u_samples; ++i) {
        vec2 xi = hammersley(uint(i), uint(u_samples));
        float phi = 2.0 * PI * xi.x;
        float cos_t = sqrt((1.0 - xi.y) / (1.0 + (a2 - 1.0) * xi.y));
        float sin_t = sqrt(1.0 - cos_t * cos_t);
        vec3 H = T * (sin_t * cos(phi)) + B * (sin_t * sin(phi)) + N * cos_t;
        vec3 L = 2.0 * dot(N, H) * H - N;
        float NdotL = dot(N, L);
        if (NdotL > 0.0) {
            float dd = cos_t * cos_t * (a2 - 1.0) + 1.0;
            float D = a2 / (PI * dd * dd);
            float pdf = D * 0.25;
            float omega_s = 1.0 / (float(u_samples) * pdf + 1e-6);
            float lod = max(0.5 * log2(omega_s / omega_p) + 1.0, 0.0);
            acc += textureLod(u_src, dir_to_equirect(L), lod).rgb * NdotL;
            wsum += NdotL;
        }
    }
    o_color = vec4(acc / max(wsum, 1e-6), 1.0);
}
