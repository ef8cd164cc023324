#version 330 core
// glTF 2.0 metallic-roughness shading as three.js r187 MeshStandardMaterial: split-sum IBL with a
// GGX DFG LUT and multi-scattering, SH9 diffuse irradiance, an optional directional light, tone
// mapping and sRGB output. Writes colour (location 0), world normal + coverage (1) and OpenCV depth (2).
//
// Compiled per feature set (as three.js does): the renderer prepends
//   MODE        0 lit, 1 base colour (unlit), 2 normals view, 3 UV-checker view, 4 geometry only
//   HAS_TEX0..4 texture slot present      ALPHA_MODE 0 OPAQUE, 1 MASK, 2 BLEND
//   HAS_ENV, HAS_LIGHT, MAT_UNLIT, VERTEX_SH (irradiance interpolated from the vertices),
//   HAS_VCOLOR (COLOR_0 present), HAS_UV1 (a slot samples TEXCOORD_1), TONEMAP
// so software rasterisers (llvmpipe executes both sides of branches) only pay for what is used.
//#include common.glsl

in vec3 v_world;
in vec3 v_normal;
in vec4 v_tangent;
in vec2 v_uv0;
#if HAS_UV1
in vec2 v_uv1;
#endif
#if HAS_VCOLOR
in vec4 v_color;
#endif
#if MODE == 4
in float v_depth;
#endif
#if VERTEX_SH
in vec3 v_irradiance;
#endif

uniform vec4 u_base_color_factor;
uniform float u_metallic_factor;
uniform float u_roughness_factor;
uniform vec3 u_emissive;        // emissive factor x emissive strength
uniform float u_normal_scale;
uniform float u_occlusion_strength;
uniform float u_alpha_cutoff;

// texture slots: 0 base colour (sRGB), 1 metallic-roughness, 2 normal, 3 occlusion, 4 emissive (sRGB)
uniform sampler2D u_tex0;
uniform sampler2D u_tex1;
uniform sampler2D u_tex2;
uniform sampler2D u_tex3;
uniform sampler2D u_tex4;
uniform int u_texcoord[5];
uniform mat3 u_uvmat[5];
uniform vec2 u_mirror[5];

uniform vec3 u_camera_pos;
uniform sampler2D u_env_spec;   // equirect, mip level i prefiltered for roughness i / u_env_max_lod
uniform sampler2D u_brdf_lut;   // x = NdotV, y = roughness (scale, bias)
uniform vec3 u_sh[9];           // Lambertian radiance SH9 (already convolved and divided by pi)
uniform float u_env_intensity;
uniform mat3 u_env_rot;         // world direction -> environment direction
uniform float u_env_max_lod;
uniform vec3 u_light_dir;       // direction the light travels (world)
uniform vec3 u_light_radiance;  // colour x intensity

layout(location = 0) out vec4 o_color;
#if MODE == 4
layout(location = 1) out vec4 o_normal;
layout(location = 2) out float o_depth;
#endif

vec2 slot_uv(int i) {
#if HAS_UV1
    vec2 uv = u_texcoord[i] == 1 ? v_uv1 : v_uv0;
#else
    vec2 uv = v_uv0;
#endif
    return (u_uvmat[i] * vec3(uv, 1.0)).xy;
}

vec4 sample_slot(int i) {
    vec2 uv = slot_uv(i);
    vec2 dx = dFdx(uv), dy = dFdy(uv);
    // MIRRORED_REPEAT done here (the GL texture repeats); gradients of the unwrapped uv keep mips right
    vec2 m = mod(uv, 2.0);
    vec2 mirrored = mix(m, 2.0 - m, step(1.0, m));
    uv = mix(uv, mirrored, u_mirror[i]);
    if (i == 0) return textureGrad(u_tex0, uv, dx, dy);
    if (i == 1) return textureGrad(u_tex1, uv, dx, dy);
    if (i == 2) return textureGrad(u_tex2, uv, dx, dy);
    if (i == 3) return textureGrad(u_tex3, uv, dx, dy);
    return textureGrad(u_tex4, uv, dx, dy);
}
// (sample_slot is only called with constant slots, so the chain above folds away at compile time)

void main() {
#if HAS_VCOLOR
    vec4 base = u_base_color_factor * v_color;
#else
    vec4 base = u_base_color_factor;
#endif
#if HAS_TEX0
    base *= sample_slot(0);
#endif
#if ALPHA_MODE == 1
    if (base.a < u_alpha_cutoff) discard;
    base.a = 1.0;
#elif ALPHA_MODE == 0
    base.a = 1.0;
#else
    if (base.a < 1.0 / 255.0) discard;
#endif

    vec3 ng = normalize(v_normal);
    vec3 n = ng;
#if HAS_TEX2 && MODE != 1 && MODE != 3
    if (dot(v_tangent.xyz, v_tangent.xyz) > 1e-12) {
        vec3 t = normalize(v_tangent.xyz - ng * dot(ng, v_tangent.xyz));
        vec3 b = cross(ng, t) * (v_tangent.w < 0.0 ? -1.0 : 1.0);
        vec3 nt = sample_slot(2).xyz * 2.0 - 1.0;
        nt *= vec3(u_normal_scale, u_normal_scale, 1.0);
        if (!gl_FrontFacing) { t = -t; b = -b; ng = -ng; }
        n = normalize(mat3(t, b, ng) * nt);
    } else if (!gl_FrontFacing) {
        n = -n;
        ng = -ng;
    }
#else
    if (!gl_FrontFacing) { n = -n; ng = -ng; }
#endif

    vec3 color = vec3(0.0);
#if MODE == 1 || (MAT_UNLIT && MODE == 0)
    color = base.rgb;
#elif MODE == 2
    color = n * 0.5 + 0.5;
#elif MODE == 3
    vec2 c = floor(fract(slot_uv(0)) * 8.0);
    float k = mod(c.x + c.y, 2.0);
    color = mix(vec3(0.9, 0.9, 0.9), vec3(0.8, 0.1, 0.6), k) * (0.5 + 0.5 * fract(slot_uv(0).x));
#elif MODE == 0
    {
        // Shading follows three.js r187 MeshStandardMaterial (the web and WebXR viewers): split-sum
        // IBL with the GGX DFG LUT (height-correlated Smith, the same table three.js ships),
        // Fdez-Aguera multi-scattering mixed between dielectric and metal, specular occlusion.
        float metallic = u_metallic_factor;
        float roughness = u_roughness_factor;
#if HAS_TEX1
        vec4 mr = sample_slot(1);
        roughness *= mr.g;
        metallic *= mr.b;
#endif
        metallic = clamp(metallic, 0.0, 1.0);
        // minimum roughness and geometric specular anti-aliasing, as three.js
        vec3 dxy = max(abs(dFdx(ng)), abs(dFdy(ng)));
        roughness = min(max(clamp(roughness, 0.0, 1.0), 0.045) + max(max(dxy.x, dxy.y), dxy.z), 1.0);
        vec3 v = normalize(u_camera_pos - v_world);
        float NdotV = clamp(dot(n, v), 0.0, 1.0);
        vec3 f0_d = vec3(0.04);
        vec3 f0 = mix(f0_d, base.rgb, metallic);
        vec3 c_diff = base.rgb * (1.0 - metallic);
        vec2 fab = texture(u_brdf_lut, vec2(NdotV, roughness)).rg;
#if HAS_ENV
        {
            // cosine-convolved irradiance / pi from SH9 (three.js samples its blurriest PMREM level)
#if VERTEX_SH
            vec3 irradiance = v_irradiance;
#else
            vec3 irradiance = max(sh9(u_sh, u_env_rot * n), vec3(0.0));
#endif
            vec3 r = reflect(-v, n);
            float r2 = roughness * roughness;
            r = normalize(mix(r, n, r2 * r2));
            vec3 radiance = textureLod(u_env_spec, dir_to_equirect(u_env_rot * r), roughness * u_env_max_lod).rgb;
            float Ems = 1.0 - (fab.x + fab.y);
            vec3 ss_d = f0_d * fab.x + fab.y;
            vec3 Favg_d = f0_d + (1.0 - f0_d) * 0.047619;
            vec3 ms_d = ss_d * Favg_d / (1.0 - Ems * Favg_d) * Ems;
            vec3 ss_m = base.rgb * fab.x + fab.y;
            vec3 Favg_m = base.rgb + (1.0 - base.rgb) * 0.047619;
            vec3 ms_m = ss_m * Favg_m / (1.0 - Ems * Favg_m) * Ems;
            vec3 single_s = mix(ss_d, ss_m, metallic);
            vec3 multi_s = mix(ms_d, ms_m, metallic);
            vec3 diffuse = c_diff * (1.0 - ss_d - ms_d) * irradiance;
            vec3 specular = radiance * single_s + multi_s * irradiance;
#if HAS_TEX3
            float ao = 1.0 + u_occlusion_strength * (sample_slot(3).r - 1.0);
            diffuse *= ao;
            specular *= clamp(pow(NdotV + ao, exp2(-16.0 * roughness - 1.0)) - 1.0 + ao, 0.0, 1.0);
#endif
            color += (diffuse + specular) * u_env_intensity;
        }
#endif
#if HAS_LIGHT
        {
            vec3 l = normalize(-u_light_dir);
            vec3 h = normalize(l + v);
            float NdotL = clamp(dot(n, l), 0.0, 1.0);
            float NdotH = clamp(dot(n, h), 0.0, 1.0);
            float VdotH = clamp(dot(v, h), 0.0, 1.0);
            float a = roughness * roughness;
            float a2 = a * a;
            float dd = NdotH * NdotH * (a2 - 1.0) + 1.0;
            float D = a2 / (PI * dd * dd);
            float gv = NdotL * sqrt(NdotV * NdotV * (1.0 - a2) + a2);
            float gl = NdotV * sqrt(NdotL * NdotL * (1.0 - a2) + a2);
            float Vis = 0.5 / max(gv + gl, 1e-6);
            float fc = pow(1.0 - VdotH, 5.0);
            vec3 F = f0 + (1.0 - f0) * fc;
            vec3 F_d = f0_d + (1.0 - f0_d) * fc;
            vec3 ms_comp = 1.0 + f0 * (1.0 / max(fab.x + fab.y, 1e-4) - 1.0);
            color += u_light_radiance * NdotL * (F * (D * Vis) * ms_comp + c_diff / PI * (1.0 - F_d));
        }
#endif
        vec3 e = u_emissive;
#if HAS_TEX4
        e *= sample_slot(4).rgb;
#endif
        color += e;
    }
#endif

#if MODE == 2 || MODE == 3 || MODE == 4
    vec3 outc = color;
#else
    vec3 outc = linear_to_srgb(tonemap(color));
#endif
    o_color = vec4(outc, base.a);
#if MODE == 4
    o_normal = vec4(n, 1.0);
    o_depth = v_depth;
#endif
}
